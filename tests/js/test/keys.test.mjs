// Signing keys with the real JavaScript clients (issue 14), the twins of tests/py/test_keys.py and
// tests/py/test_multi_server.py: tokens from @azure/identity's ClientSecretCredential, verified with
// jose against the JWKS a relying party fetches (through the discovery document's jwks_uri), before
// and after `openmi server keys rotate` beside the running server, across a restart, and across
// two servers sharing one database (one PostgreSQL schema; on SQLite, one database file).

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";

import { ClientSecretCredential } from "@azure/identity";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";

import { ARM, ARM_SCOPE, BACKEND, OPENMI_BIN, freePort, logged, newDir, newPgSchema, sleep, startServer, tail } from "../lib/support.mjs";

const servers = [];
const schemas = [];
after(async () => {
  for (const server of servers.splice(0)) await server.stop().catch(() => {});
  for (const schema of schemas.splice(0)) schema.drop();
});

async function start(options) {
  const server = await startServer(options);
  servers.push(server);
  return server;
}

/** A token of the bootstrap service principal from `server`, through a credential of its own (no cache). */
async function mint(server, clientId = server.clientId, secret = server.clientSecret) {
  const credential = new ClientSecretCredential(server.tenantId, clientId, secret, {
    authorityHost: server.url,
    disableInstanceDiscovery: true,
  });
  return (await credential.getToken(ARM_SCOPE)).token;
}

function kid(token) {
  return decodeProtectedHeader(token).kid;
}

/**
 * Verifies signature, audience, issuer and times as a relying party does: the JWKS named by the
 * discovery document of `jwksFrom` (default the issuing server), fetched fresh.
 */
async function verify(server, token, { jwksFrom = server } = {}) {
  const discovery = await (await fetch(`${jwksFrom.url}/${jwksFrom.tenantId}/v2.0/.well-known/openid-configuration`)).json();
  const keys = createRemoteJWKSet(new URL(discovery.jwks_uri));
  const { payload } = await jwtVerify(token, keys, {
    audience: ARM,
    issuer: `${server.url}/${server.tenantId}/`,
    algorithms: ["RS256"],
    requiredClaims: ["exp", "iat", "nbf", "aud", "iss"],
    clockTolerance: 5,
  });
  return payload;
}

async function publishedKids(server) {
  const res = await server.request("GET", "/common/discovery/keys");
  assert.equal(res.status, 200, res.text);
  return new Set(res.json.keys.map((key) => key.kid));
}

/** `openmi server keys rotate` as a separate process beside the running server. */
function rotate(server) {
  const args = ["server", "keys", "rotate", "--data-dir", server.dataDir];
  if (server.databaseUrl) args.push("--database-url", server.databaseUrl);
  args.push("--publish-delay", "0");
  const res = spawnSync(OPENMI_BIN, args, { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"] });
  assert.equal(res.status, 0, `openmi ${args.join(" ")} -> ${res.status}\nstdout: ${res.stdout}\nstderr: ${res.stderr}`);
}

async function waitForNewKid(server, oldKid, withinMs = 10_000) {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const token = await mint(server);
    if (kid(token) !== oldKid) return token;
    await sleep(250);
  }
  throw new Error(`tokens were still signed with kid ${oldKid} ${withinMs} ms after \`server keys rotate\``);
}

/** A key-encryption key file as `openssl rand -hex 32 > file` writes it. */
function writeKek(name = "kek.hex") {
  const file = path.join(newDir("kek"), name);
  fs.writeFileSync(file, `${crypto.randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  return file;
}

/** One database for several servers: a new PostgreSQL schema, or (SQLite) `dir`'s database file. */
function sharedDatabase(dir) {
  if (BACKEND === "postgres") {
    const schema = newPgSchema();
    schemas.push(schema);
    return schema.url;
  }
  return `sqlite://${path.join(dir, "openmi.db")}?mode=rwc`;
}

// ------------------------------------------------------------------------------------------------

describe("signing-key rotation (tests/py/test_keys.py)", () => {
  test("while the server runs: new tokens get the new key, the old token still verifies against the JWKS", logged(async () => {
    const server = await start();
    const tokenA = await mint(server);
    const kidA = kid(tokenA);
    assert.ok(kidA, "the header names its key");
    rotate(server);
    assert.equal(server.exitedRef(), null, "the server still runs");
    const tokenB = await waitForNewKid(server, kidA);
    const kidB = kid(tokenB);

    // The JWKS, fetched fresh after the rotation, publishes both keys and both tokens verify.
    const kids = await publishedKids(server);
    assert.ok(kids.has(kidA) && kids.has(kidB), JSON.stringify([...kids]));
    const claimsA = await verify(server, tokenA);
    const claimsB = await verify(server, tokenB);
    assert.equal(claimsA.appid, server.clientId);
    assert.equal(claimsB.appid, server.clientId);
  }));

  test("the rotated key survives a restart; the old key is still published", logged(async () => {
    const server = await start();
    const tokenA = await mint(server);
    rotate(server);
    const kidB = kid(await waitForNewKid(server, kid(tokenA)));
    // The same database and port after the restart: the schema outlives the first process.
    const schema = server.schema;
    server.schema = null;
    await server.stop();
    const again = await start({ dataDir: server.dataDir, databaseUrl: server.databaseUrl, port: server.port });
    again.schema = schema;
    const tokenC = await mint(again);
    assert.equal(kid(tokenC), kidB);
    await verify(again, tokenC);
    await verify(again, tokenA);
  }));
});

describe("servers sharing one database (tests/py/test_multi_server.py)", () => {
  test("replicas share the tenant and the key ring; a replica with another key-encryption key refuses to start", logged(async () => {
    const kek = writeKek();
    const firstDir = newDir("server");
    const databaseUrl = sharedDatabase(firstDir);
    const extraArgs = ["--key-encryption-key-file", kek];
    const one = await start({ dataDir: firstDir, databaseUrl: BACKEND === "postgres" ? databaseUrl : undefined, extraArgs });
    const two = await start({ databaseUrl, extraArgs });
    assert.notEqual(one.dataDir, two.dataDir);
    assert.notEqual(one.port, two.port);
    const bootTwo = JSON.parse(fs.readFileSync(path.join(two.dataDir, "bootstrap.json"), "utf8"));
    assert.equal(bootTwo.tenantId, one.tenantId);
    assert.equal(bootTwo.subscriptionId, one.subscriptionId);

    // A token minted by server one verifies with the keys published by server two.
    const token = await mint(one);
    assert.ok((await publishedKids(two)).has(kid(token)), "server two publishes server one's signing key");
    const claims = await verify(one, token, { jwksFrom: two });
    assert.equal(claims.tid, one.tenantId);

    // The bootstrap client's secret is the same on both: server two accepts it.
    const fromTwo = await mint(two, one.clientId, one.clientSecret);
    assert.equal((await verify(two, fromTwo)).appid, one.clientId);

    // A third replica with another key-encryption key cannot read the key ring and refuses to start.
    const otherKek = writeKek("other-kek.hex");
    const dataDir = newDir("server");
    fs.mkdirSync(path.join(dataDir, "tls"), { recursive: true });
    for (const file of ["ca.pem", "ca.key"]) fs.copyFileSync(path.join(one.dataDir, "tls", file), path.join(dataDir, "tls", file));
    const port = await freePort();
    const logPath = path.join(dataDir, "refused.log");
    const proc = spawn(OPENMI_BIN, [
      "server", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`, "--database-url", databaseUrl,
      "--key-encryption-key-file", otherKek,
    ], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr.on("data", (chunk) => (stderr += chunk));
    proc.stdout.on("data", (chunk) => fs.appendFileSync(logPath, chunk));
    const code = await new Promise((resolve) => {
      const timer = setTimeout(() => {
        proc.kill("SIGKILL");
        resolve("still running after 30 s");
      }, 30_000);
      proc.on("exit", (exitCode, signal) => {
        clearTimeout(timer);
        resolve(exitCode ?? signal);
      });
    });
    assert.notEqual(code, "still running after 30 s", `a server with a foreign key-encryption key still runs\nstderr: ${stderr.slice(-2000)}`);
    assert.notEqual(code, 0, stderr);
    assert.ok(stderr.toLowerCase().includes("key-encryption key"), `stdout: ${tail(logPath, 40)}\nstderr: ${stderr.slice(-2000)}`);
  }));
});
