// Managed identities for Node code "on the VM" (issue 14): seed 002 end to end with
// @azure/identity's ManagedIdentityCredential and @azure/arm-resources inside `openmi vm run`
// (IMDS through AZURE_POD_IDENTITY_AUTHORITY_HOST, and the App Service protocol), selection by
// clientId / objectId / resourceId, DefaultAzureCredential, @azure/msal-node's
// ManagedIdentityApplication, and revocation: an identity removed from the VM yields no token;
// the server going away: a long-running `openmi agent` serves its cached tokens while the server
// is down and gets new ones, and its watch back, once the server is started again.
// The administrator's side uses @azure/arm-msi, -compute and -authorization.

import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { createRemoteJWKSet, jwtVerify } from "jose";

import {
  ARM, JS_ROOT, OPENMI_BIN, cliLoginSp, logged, newDir, runCli, sleep, startServer, tail, uniqueName, unverifiedClaims, vmRun,
} from "../lib/support.mjs";
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

// ------------------------------------------------------------------------------------------------
// The server going away (tests/py/test_agent.py::test_cached_tokens_are_served_while_the_server_is_down)

const GRAPH = "https://graph.microsoft.com";
const IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token";
const IMDS_API = "2018-02-01";
// Revocation must reach the agent within this (issue 6: "the next request for that identity fails within 1 s").
const REVOCATION_MS = 1_000;
// What support.mjs's Server.stop allows a SIGTERM (the Python suite's STOP_TIMEOUT).
const STOP_TIMEOUT_MS = 10_000;
// Variables through which a workload could pick some other credential (as vmRun clears them).
const CREDENTIAL_ENV_VARS = [
  "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_USERNAME", "AZURE_PASSWORD",
  "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
  "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT",
  "MSI_SECRET", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "AZURE_TOKEN_CREDENTIALS",
];

/**
 * `openmi agent` for VM `rg`/`vm` (a new join token from `openmi vm join-token`) on a free loopback
 * port, as tests/py's agents.start: resolves once its --ready-file names its URL. Throttling is
 * raised far above what the test sends (the test is not about it).
 */
async function startAgent(srv, cliDir, rg, vm) {
  const joinToken = runCli(cliDir, ["vm", "join-token", "-g", rg, "-n", vm]).json().joinToken;
  assert.ok(joinToken, "`vm join-token` printed no joinToken");
  const dir = newDir("agent");
  const logPath = path.join(dir, "agent.log");
  const readyFile = path.join(dir, "ready");
  const log = fs.openSync(logPath, "a");
  const proc = spawn(OPENMI_BIN, [
    "agent", "--server", srv.url, "--ca-cert", srv.caCertPath, "--state-dir", path.join(dir, "state"),
    "--listen", "127.0.0.1:0", "--ready-file", readyFile, "--rate-limit", "1000", "--max-concurrent", "64",
  ], { stdio: ["ignore", log, log], env: { ...process.env, OPENMI_JOIN_TOKEN: joinToken } });
  fs.closeSync(log);
  const agent = {
    proc, logPath, url: null,
    running: () => proc.exitCode === null && proc.signalCode === null,
    logTail: (lines = 60) => tail(logPath, lines),
    async stop() {
      if (!agent.running()) return;
      const exited = new Promise((resolve) => proc.once("exit", () => resolve(true)));
      proc.kill("SIGTERM");
      if (!(await within(exited, STOP_TIMEOUT_MS))) proc.kill("SIGKILL");
    },
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const text = fs.existsSync(readyFile) ? fs.readFileSync(readyFile, "utf8").trim() : "";
    if (text.startsWith("http")) {
      agent.url = text.split("\n")[0].trim().replace(/\/+$/, "");
      return agent;
    }
    if (!agent.running()) throw new Error(`openmi agent exited with ${proc.exitCode ?? proc.signalCode} before it was ready:\n${agent.logTail()}`);
    await sleep(50);
  }
  await agent.stop();
  throw new Error(`openmi agent wrote no ready file within 30 s:\n${agent.logTail()}`);
}

/**
 * @azure/identity's ManagedIdentityCredential().getToken(scope) pointed at the agent through
 * AZURE_POD_IDENTITY_AUTHORITY_HOST (what `openmi vm run` sets), in a new Node process each time:
 * msal-node keeps managed-identity tokens in a process-wide cache, so every call here reaches
 * the agent. `{token, expiresOn}` or `{tokenError}`.
 */
async function credentialToken(agent, scope = `${ARM}/.default`) {
  const script = `
    import { ManagedIdentityCredential } from "@azure/identity";
    const out = {};
    try {
      const access = await new ManagedIdentityCredential().getToken(process.env.OPENMI_TEST_SCOPE);
      out.token = access.token;
      out.expiresOn = access.expiresOnTimestamp;
    } catch (error) {
      out.tokenError = error.name + ": " + error.message;
    }
    console.log(JSON.stringify(out));`;
  const env = { ...process.env };
  for (const name of CREDENTIAL_ENV_VARS) delete env[name];
  Object.assign(env, { AZURE_POD_IDENTITY_AUTHORITY_HOST: agent.url, OPENMI_TEST_SCOPE: scope });
  const { code, stdout, stderr } = await new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: JS_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    proc.stdout.on("data", (chunk) => (out += chunk));
    proc.stderr.on("data", (chunk) => (err += chunk));
    const timer = setTimeout(() => proc.kill("SIGKILL"), 90_000);
    proc.on("error", reject);
    proc.on("close", (exitCode) => {
      clearTimeout(timer);
      resolve({ code: exitCode, stdout: out, stderr: err });
    });
  });
  const line = stdout.split("\n").filter((l) => l.startsWith("{")).pop();
  if (code !== 0 || !line) throw new Error(`the ManagedIdentityCredential workload -> ${code}\nstdout: ${stdout}\nstderr: ${stderr.slice(-3000)}`);
  return JSON.parse(line);
}

/** A raw IMDS token request to the agent (`Metadata: true`): {status, text, json}, or {error} if none came back. */
async function imdsToken(agent, resource = ARM) {
  const query = new URLSearchParams({ "api-version": IMDS_API, resource });
  try {
    const res = await fetch(`${agent.url}${IMDS_TOKEN_PATH}?${query}`, { headers: { Metadata: "true" }, signal: AbortSignal.timeout(60_000) });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // shown as text
    }
    return { status: res.status, text, json };
  } catch (error) {
    return { status: null, error: `${error.name}: ${error.message}` };
  }
}

/** `promise`, or null once `ms` have passed (the timer cleared either way, so it holds no exit). */
async function within(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The server's `openmi_agents_connected` (agent watches open on it), from its /metrics. */
async function agentsConnected(srv) {
  try {
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    const match = /^openmi_agents_connected(?:\{\})?\s+(\S+)/m.exec(text);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

const describeRes = (res) => (res.status === null ? res.error : `HTTP ${res.status}: ${res.text.slice(0, 600)}`);

/** A 200 IMDS token answer, every value a string, expires_in and expires_on consistent. */
function imdsTokenBody(res) {
  assert.equal(res.status, 200, describeRes(res));
  const body = res.json;
  for (const key of ["access_token", "expires_in", "expires_on", "not_before", "resource", "token_type", "client_id"]) {
    assert.equal(typeof body?.[key], "string", `${key} (IMDS answers every value as a string): ${describeRes(res)}`);
  }
  assert.equal(body.token_type, "Bearer");
  const expiresIn = Number(body.expires_in);
  assert.ok(expiresIn > 0 && expiresIn <= 86400 + 600, describeRes(res));
  assert.ok(Math.abs(Date.now() / 1000 + expiresIn - Number(body.expires_on)) <= 10, `expires_in and expires_on disagree: ${describeRes(res)}`);
  return body;
}

/** Calls fetchOnce() every `intervalMs` until done(result) or `timeoutMs`: {res, took} (ms). */
async function waitFor(fetchOnce, done, timeoutMs, intervalMs = 50) {
  const startedAt = Date.now();
  for (;;) {
    const res = await fetchOnce();
    const took = Date.now() - startedAt;
    if (done(res) || took >= timeoutMs) return { res, took };
    await sleep(intervalMs);
  }
}

describe("the server going away", () => {
  test("a running agent serves its cached token while the server is down; restarted, new tokens and the watch come back", logged(async () => {
    const srv = await startServer();
    let restarted = null;
    let agent = null;
    try {
      const admin = await armClients(srv);
      const adminCli = cliLoginSp(srv);
      const rg = await createGroup(admin);
      const vm = await timed(admin.compute.virtualMachines.createOrUpdate(rg, "vm1", vmBody(srv, "vm1", { identity: { type: "SystemAssigned" } })));
      agent = await startAgent(srv, adminCli, rg, "vm1");
      const first = await credentialToken(agent);
      assert.ok(first.token, JSON.stringify(first));
      assert.equal(unverifiedClaims(first.token).oid, vm.identity.principalId);
      const firstRaw = imdsTokenBody(await imdsToken(agent));
      assert.equal(firstRaw.access_token, first.token, "one cached token for the identity and resource");

      // SIGTERM, with the agent's watch open. The exit code and time are checked at the end, so
      // that a slow exit does not hide the rest.
      const open = await waitFor(() => agentsConnected(srv), (n) => n >= 1, 10_000, 100);
      assert.equal(open.res, 1, "the agent's watch is not open on the server");
      const stopStarted = Date.now();
      const exited = new Promise((resolve) => srv.proc.once("exit", (code, signal) => resolve({ code, signal })));
      srv.proc.kill("SIGTERM");
      const exit = await within(exited, 60_000);
      const shutdownTook = Date.now() - stopStarted;
      assert.ok(exit, `the server did not exit within 60 s of SIGTERM:\n${srv.logTail()}`);

      // The same token, from the agent's cache.
      const again = await credentialToken(agent);
      assert.equal(again.token, first.token, `the cached token must be served while the server is down: ${JSON.stringify(again)}`);
      assert.ok(Math.abs(again.expiresOn - first.expiresOn) <= 1_000, `expiresOn ${first.expiresOn} then ${again.expiresOn}`);
      const againRaw = imdsTokenBody(await imdsToken(agent));
      assert.equal(againRaw.access_token, first.token);
      assert.equal(Number(againRaw.expires_on), Number(firstRaw.expires_on), `${JSON.stringify(firstRaw)} then ${JSON.stringify(againRaw)}`);
      assert.equal(unverifiedClaims(againRaw.access_token).oid, vm.identity.principalId);

      // A token it does not have cannot be made: an error, but not "no such identity" (400).
      const missing = await imdsToken(agent, GRAPH);
      assert.ok(missing.status !== 200 && missing.status !== 400, describeRes(missing));
      const missingCredential = await credentialToken(agent, `${GRAPH}/.default`);
      assert.equal(missingCredential.token, undefined, JSON.stringify(missingCredential));
      assert.match(missingCredential.tokenError, /^CredentialUnavailableError: /, missingCredential.tokenError);
      assert.ok(agent.running(), `the agent exited while the server was down:\n${agent.logTail()}`);

      // The server back (same data, same port): the agent gets new tokens again.
      restarted = await startServer({ dataDir: srv.dataDir, databaseUrl: srv.databaseUrl, port: srv.port });
      const graph = await waitFor(() => imdsToken(agent, GRAPH), (res) => res.status === 200, 30_000, 250);
      const graphRaw = imdsTokenBody(graph.res);
      assert.equal(unverifiedClaims(graphRaw.access_token).aud, GRAPH);
      const graphCredential = await credentialToken(agent, `${GRAPH}/.default`);
      assert.equal(graphCredential.token, graphRaw.access_token, JSON.stringify(graphCredential));

      // The watch came back too (within its longest backoff, 10 s, after the restart): the system
      // identity switched off now is refused within 1 s, though the agent holds a cached token for it.
      const watch = await waitFor(() => agentsConnected(restarted), (n) => n >= 1, 15_000, 100);
      assert.equal(watch.res, 1, `the agent's watch is not back on the restarted server ${watch.took} ms after its Graph token`);
      imdsTokenBody(await imdsToken(agent));
      runCli(adminCli, ["vm", "identity", "remove", "-g", rg, "-n", "vm1", "--identities", "[system]"]);
      const revoked = await waitFor(() => imdsToken(agent), (res) => res.status !== 200, 10_000);
      assert.equal(revoked.res.status, 400, describeRes(revoked.res));
      assert.ok(revoked.took < REVOCATION_MS, `after the restart, a removed identity's token was served for ${revoked.took} ms`);
      const refused = await credentialToken(agent);
      assert.equal(refused.token, undefined, JSON.stringify(refused));
      assert.match(refused.tokenError, /^CredentialUnavailableError: /, refused.tokenError);

      assert.equal(exit.code, 0, `the server exited with ${exit.code ?? exit.signal} after SIGTERM:\n${srv.logTail()}`);
      assert.ok(shutdownTook < STOP_TIMEOUT_MS,
        `the server took ${shutdownTook} ms to exit after SIGTERM with an agent connected (an open watch long poll must not hold the shutdown)`);
    } catch (error) {
      if (agent && error && typeof error === "object") error.message = `${error.message}\n--- openmi agent log tail (${agent.logPath}) ---\n${agent.logTail(40)}`;
      throw error;
    } finally {
      await agent?.stop();
      await restarted?.stop();
      await srv.stop(); // exited already: only its PostgreSQL schema is dropped
    }
  }));
});
